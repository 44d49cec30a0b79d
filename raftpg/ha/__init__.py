"""The HA brain: a deterministic core (core.step over memory.Memory, with decide.py's tables) and the
shell that gathers views, carries out the core's actions and reports their outcomes (loop, executor)."""
