"""Import stub for torchvision, used only by benchmarks/samplers.py.

k-diffusion's utils module imports torchvision.transforms.functional at module level, but its samplers never
call it; the CPU torch in this project's environment cannot load a real torchvision beside it.
"""
