"""MNIST digit classifier: a 784-128-10 MLP with ReLU (hwgrade's reference mnist submission)."""

import torch
import torch.nn as nn


class MnistMLP(nn.Module):
    """Takes (n, 1, 28, 28) pixels in [0, 1] (what transforms.ToTensor() gives), returns (n, 10) logits."""

    def __init__(self, hidden: int = 128, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.flatten(x))))
