"""Pictures: depth frames with skeletons, tiles of them, PNG files. Drawing only: no file reading,
no hand finding (that is the callers', e.g. :mod:`handvox.cli.show`)."""
