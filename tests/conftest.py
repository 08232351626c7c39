import torch

# the suite's speed target is for 2 cores; more threads only add noise to the timing tests
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
