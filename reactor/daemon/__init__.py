"""The daemon: the supervisor process, its sessions, and how it is launched."""
