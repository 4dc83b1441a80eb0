"""The language every part of rade speaks: job specs, units, states, errors and wire messages.

Imports nothing of rade's other packages, so the scheduler, the agent, the engine and the command can
all depend on it.
"""
