"""Classical (numpy / OpenCV) stages the runtime, the training data and the evaluation share.

``motion_segmentation`` (robust dominant motion, the residual cue, the classical reference's
segmentation), ``opencv_flow`` (DIS and Farneback flows, the classical reference), ``prealign``
(the pair's dominant translation), ``flow_refinement`` (variational refinement of a flow) and
``forward_backward`` (the forward-backward consistency check). They import no other subpackage
of jointperception but ``errors`` (docs/design.md, layers).
"""
