"""Side-by-side benchmarks against Captum (and PAIR saliency): ``python -m benchmarks NAME``."""
