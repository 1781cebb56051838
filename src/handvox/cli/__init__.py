"""The ``handvox`` command line: every argument parser, and the commands that are only runs of
the library (predict over files, bench, demo)."""
