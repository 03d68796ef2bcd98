"""The real dtq task queue: gRPC services for Design A (microservices) and Design B (monolith per node)."""
