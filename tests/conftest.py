import torch

# The unit tests run thousands of tiny tensor operations: extra threads only add synchronisation,
# which on a shared 2-core machine can make them many times slower. Notebooks run in their own
# kernels and keep torch's default.
torch.set_num_threads(1)
