"""The host half of each operation: host/calls.py declares its calls, host/handlers.py and
host/vm_start.py answer them from a self-contained request and the host itself (never the
master's store); master/host_half.py sends them and records the answers."""
