"""The ``skybutler`` command line: a thin layer over the Python API.

``main.cli`` is the click group; commands live in topic modules listed in
``main.COMMAND_MODULES`` and share the output, parsing and error helpers of
``helpers``.
"""
