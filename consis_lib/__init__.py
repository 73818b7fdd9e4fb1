"""consis: neuron consistency and adversarial training with a consistent loss.

Companion to Dong, Bao, Su, Zhu, *Towards Interpretable Deep Neural Networks by
Leveraging Adversarial Examples* (arXiv 1901.09035).
"""

__version__ = "0.1.0"
