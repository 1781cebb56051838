"""Pictures: depth frames with skeletons, tiles and plots."""
