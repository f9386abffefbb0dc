"""potnn-bench: build, flash or emulate, and measure potnn models on microcontrollers."""
