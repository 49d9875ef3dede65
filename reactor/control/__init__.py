"""The control plane: ZeroMQ sockets carrying protobuf messages."""
