"""The ``countersign`` command and ``countersign dev``: the composition root, on top of every other package.

Nothing imports this package except the console-script entry point; it may import anything.
"""
