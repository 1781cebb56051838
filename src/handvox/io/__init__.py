"""Reading and writing data as the public datasets distribute it."""
