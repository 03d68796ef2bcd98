"""SimPy discrete-event simulator of both dtq designs, driven by the shared core (model/)."""
