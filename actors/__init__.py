"""Actor runtime and actors, installed as ``dccd.actors``."""
