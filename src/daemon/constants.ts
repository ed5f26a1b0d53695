// Constants the CLIs need without loading the daemon (dfget starts faster without it).

/** Where Dragonfly's dfdaemon listens for dfget, so existing scripts find us. */
export const DEFAULT_SOCKET_PATH = "/var/run/dragonfly/dfdaemon.sock";
