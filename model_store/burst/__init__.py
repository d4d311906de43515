"""Multi-frame (burst) super-resolution: burst synthesis, sub-pixel registration, fusion helpers,
the burst descriptor the worker calls, training and evaluation.

Conventions shared by every module here:
- a burst is a float tensor (B, K, 3, h, w) in [0, 1], RGB;
- `shifts` are (B, K, 2) as (dy, dx) in LR pixels relative to the reference frame (index 0 inside
  models and the synthesiser): frame_k(p) = reference(p - shift_k), i.e. the content of frame k sits
  `shift_k` further down/right than in the reference;
- the HR output is on the reference frame's grid: LR position u maps to HR position (u + 0.5) s - 0.5,
  the convention of MATLAB's imresize (model_store.resize).
"""
