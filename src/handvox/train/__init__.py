"""Training: the configuration, the random draw of augmentation, the data of a run, the
distributed setup, the run's state and logs, and the loop."""
