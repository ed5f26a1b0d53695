// Who is at the other end of an accepted unix socket (SO_PEERCRED): the dfdaemon's download
// socket writes output files with the rights of the caller this names. Throws (DF_IO,
// DF_INVALID_ARGUMENT) for an fd that is not a connected unix socket.
import { binding } from "./binding.js";

/** The kernel's record of the peer when it connected: effective uid and gid, and process id (0 when that process is outside this pid namespace). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export const peerCredentials = (fd: number): PeerCredentials => binding.peerCredentials(fd);
