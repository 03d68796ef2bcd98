"""dtq's shared, sans-I/O scheduling and job state-machine core.

Imports no clock, randomness, event loop, simulator, RPC or protobuf (tests/model/test_purity.py
checks). Time comes in as `now`; randomness as a generator; decisions go out as commands.
"""
