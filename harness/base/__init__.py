"""The ground floor: errors, secrets masking, signals, fault points, files, the progress display
and logging. Imports nothing else of the harness."""
