// The status StatFile answers with when the scheduler's last preheat of the file failed on
// every peer it went to and no peer holds the file: the file will not appear, so a manager
// polling for it ends the preheat as failed with the status's message (any other StatFile
// error is a scheduler's passing trouble and is asked again).
import { status } from "@grpc/grpc-js";

export const PREHEAT_FAILED = status.ABORTED;
