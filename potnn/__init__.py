"""potnn: power-of-two quantized neural networks for multiplier-less microcontrollers."""
