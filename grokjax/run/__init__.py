"""Running and saving: the runner (calls, widths, devices, workers), sweeps, specs, storage and results reading."""
