"""Generated protobuf and gRPC code for the dtq API (package dtq.v1)."""
