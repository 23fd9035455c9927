"""The pipeline's stages after image decode in torch, for a backend on CUDA (the same code runs on
the CPU device in the tests, against the OpenCV / numpy stages of ``runtime``)."""
