"""Everything between a camera frame and a model's input, without torch (numpy + OpenCV).

Owned by the preset (``Preprocessing``) and used alike by training, calibration, evaluation
and the runtime, so all four feed a model the same numbers:

- ``align``: 5-point similarity alignment onto the canonical face crop;
- ``clips``: which frames make a clip (segments, live windows), resizing and normalisation;
- ``flow``: optical flow between two aligned faces and HTNet's flow image;
- ``micro_input``: HTNet's four-patch image from a flow image and 5 landmarks.
"""
