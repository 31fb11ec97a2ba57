"""The plain PyTorch loop most users write: PyTorch's classic MNIST VAE example.

TensorDataset + DataLoader(shuffle=True), an nn.Module with the example's layers
(784-400-(20, 20) / 20-400-784, ReLU), BCE-with-logits + KLD summed over the
batch, Adam and the standard step. ``bench_vae.py`` calls one epoch at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class VAE(nn.Module):
    def __init__(self, latent_dim: int = 20, hidden: int = 400, pixels: int = 784) -> None:
        super().__init__()
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc21 = nn.Linear(hidden, latent_dim)
        self.fc22 = nn.Linear(hidden, latent_dim)
        self.fc3 = nn.Linear(latent_dim, hidden)
        self.fc4 = nn.Linear(hidden, pixels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * log_var)
        return mu + torch.randn_like(std) * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits."""
        return self.fc4(F.relu(self.fc3(z)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_var = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, log_var)), mu, log_var


def loss_function(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """BCE (with logits) + KLD, summed over pixels, latent dims and the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return bce + kld


def make_loaders(train_images: torch.Tensor, test_images: torch.Tensor, batch_size: int = 128):
    train_loader = DataLoader(TensorDataset(train_images), batch_size=batch_size, shuffle=True)
    test_loader = DataLoader(TensorDataset(test_images), batch_size=1000, shuffle=False)
    return train_loader, test_loader


def train_epoch(model: VAE, loader: DataLoader, optimizer: torch.optim.Optimizer, device: str = "cpu") -> float:
    """One pass over the training set; returns the mean loss per image."""
    model.train()
    total = 0.0
    for (x,) in loader:
        x = x.to(device)
        optimizer.zero_grad()
        logits, mu, log_var = model(x)
        loss = loss_function(logits, x, mu, log_var)
        loss.backward()
        total += loss.item()
        optimizer.step()
    return total / len(loader.dataset)


@torch.no_grad()
def test(model: VAE, loader: DataLoader, device: str = "cpu") -> float:
    """Negative ELBO per test image (one draw of z per image)."""
    model.eval()
    total = 0.0
    for (x,) in loader:
        x = x.to(device)
        logits, mu, log_var = model(x)
        total += loss_function(logits, x, mu, log_var).item()
    return total / len(loader.dataset)
