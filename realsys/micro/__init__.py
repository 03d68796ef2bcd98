"""Design A: microservices. Six roles, one process each, talking over gRPC with a deadline on every hop.

    gateway      TaskQueue (clients)        -> job, result
    job          JobStore: JobTable + JobRecords       -> queue, coordinator
    queue        Queue: ReadyQueue + QueueEntries
    coordinator  Workers + Coordinator: WorkerRegistry -> queue, job, result
    result       ResultStore: Results keyed by (job, attempt)
    worker       WorkerRuntime                          -> coordinator

Each role is constructed as `Cls(config, metrics)` and run by realsys.server (see ROLE_CLASSES there).
"""
