"""placeholder"""
OPS = ("synonym", "swap", "delete", "insert", "entity-swap", "paraphrase")
