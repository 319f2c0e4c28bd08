"""Dataset readers, clip sampling and the synthetic benchmark (numpy/OpenCV; torch only in the Dataset wrapper)."""
