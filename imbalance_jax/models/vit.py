"""Vision Transformer (Dosovitskiy et al., ICLR 2021): vit_ti / vit_s / vit_b.

Patch embedding (conv, kernel = stride = patch size), a learnable class token, learned position
embeddings, pre-LayerNorm encoder blocks (multi-head self-attention, MLP with GELU), a final
LayerNorm; the output is the class token [B, hidden]. Sizes follow big_vision / DeiT:
Ti = (192 wide, 12 deep, 3 heads, MLP 768), S = (384, 12, 6, 1536), B = (768, 12, 12, 3072).
As torchvision's ``vit_b_16`` (torchvision/models/vision_transformer.py), whose ImageNet weights
``imbalance_jax.convert_weights`` converts exactly: LayerNorm epsilon 1e-6, the exact (erf) GELU of the
paper and torchvision (big_vision uses the tanh approximation), the class token first, position
embeddings added to the class token as well. Deviations: no dropout or stochastic depth inside the
encoder (the classifier wrapper's ``dropout`` acts on the pooled class token); position embeddings are
sized from the input resolution at init, so a model must be applied at the resolution it was
initialised with (224 px for torchvision's ImageNet weights).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from imbalance_jax.models.common import Dtype

VIT_SIZES: dict[str, dict[str, int]] = {
    "ti": dict(hidden=192, depth=12, heads=3, mlp_dim=768),
    "s": dict(hidden=384, depth=12, heads=6, mlp_dim=1536),
    "b": dict(hidden=768, depth=12, heads=12, mlp_dim=3072),
}


class MlpBlock(nn.Module):
    """Dense(mlp_dim) -> GELU (exact, erf) -> Dense(back to the input width)."""

    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = dict(dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(),
                     bias_init=nn.initializers.normal(stddev=1e-6))
        y = nn.gelu(nn.Dense(self.mlp_dim, name="fc1", **dense)(x), approximate=False)
        return nn.Dense(x.shape[-1], name="fc2", **dense)(y)


class EncoderBlock(nn.Module):
    """x + MHSA(LN(x)), then x + MLP(LN(x))."""

    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.LayerNorm(dtype=self.dtype, name="ln1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dtype=self.dtype, deterministic=True,
            kernel_init=nn.initializers.xavier_uniform(), name="attention")(y, y)
        x = x + y
        y = nn.LayerNorm(dtype=self.dtype, name="ln2")(x)
        return x + MlpBlock(self.mlp_dim, self.dtype, name="mlp")(y)


class VisionTransformer(nn.Module):
    """ViT returning the final class-token representation [B, hidden]."""

    hidden: int
    depth: int
    heads: int
    mlp_dim: int
    patch_size: int = 16
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train  # no dropout or BatchNorm inside the encoder
        height, width = x.shape[1], x.shape[2]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"config.model.patch_size={self.patch_size} must divide the image size "
                f"{height}x{width}.")
        x = nn.Conv(self.hidden, (self.patch_size, self.patch_size),
                    strides=(self.patch_size, self.patch_size), padding="VALID",
                    dtype=self.dtype, name="embedding")(x)
        batch = x.shape[0]
        x = x.reshape((batch, -1, self.hidden))
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.hidden))
        x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.hidden)).astype(x.dtype), x],
                            axis=1)
        pos = self.param("pos_embedding", nn.initializers.normal(stddev=0.02),
                         (1, x.shape[1], self.hidden))
        x = x + pos.astype(x.dtype)
        for i in range(self.depth):
            x = EncoderBlock(self.heads, self.mlp_dim, self.dtype, name=f"block{i}")(x)
        x = nn.LayerNorm(dtype=self.dtype, name="encoder_norm")(x)
        return x[:, 0]
