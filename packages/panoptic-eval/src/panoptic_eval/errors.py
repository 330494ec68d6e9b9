"""Error type of panoptic-eval."""


class PanopticEvalError(ValueError):
    """Bad evaluation input: names the file, image or argument and what is wrong."""
