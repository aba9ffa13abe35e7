"""The HD image embedding of Phi-3.5-vision: CLIP features -> 2x2 merge -> grid -> MLP.

Module names follow the official checkpoint (`img_processor.vision_model`, `glb_GN`,
`sub_GN`, `img_projection.{0,2}`), so state-dict keys need no renaming.

Per image with padded size (h, w), i.e. `rows x cols` crops of 336 px:
- CLIP runs on the global view and the `rows * cols` real crops only (the zero crops that
  pad the batch to `num_crops + 1` are skipped), and we keep the hidden state of layer
  `clip_layer_index` (-2) without the CLS token: `(crops, 576, C)`.
- 24x24 patches merge 2x2 into 12x12 tokens of 4C channels, channel order (dy, dx, c).
- Sub-crops tile a `(rows*12, cols*12)` grid; each grid row ends with `sub_GN`. The global
  view gets the same treatment (12 x 13 = 156). Order `sub_glb`: sub grid, `glb_GN`, global.
- `img_projection`: Linear(4C, H) -> GELU -> Linear(H, H).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionModel

from phi3v_data.tokens import CROP_SIZE, num_image_tokens_for_padded
from phi3v_train.configuration_phi3v import Phi3VConfig

MERGED_GRID = 12  # 24x24 CLIP patches of a 336-px crop, merged 2x2


class CLIPTower(nn.Module):
    """Holds the CLIP vision model under the official name `vision_model`."""

    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__()
        self.vision_model = CLIPVisionModel(config.vision_config)


class Phi3VImageEmbedding(nn.Module):
    def __init__(self, config: Phi3VConfig) -> None:
        super().__init__()
        width = config.img_processor["image_dim_out"] * 4
        hidden = config.text_config.hidden_size
        self.layer_index = config.clip_layer_index
        self.img_processor = CLIPTower(config)
        self.glb_GN = nn.Parameter(torch.zeros(1, 1, width))
        self.sub_GN = nn.Parameter(torch.zeros(1, 1, 1, width))
        self.img_projection = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        # CLIP layers after `layer_index` and the post-layernorm never see a gradient.
        vision = self.img_processor.vision_model
        for module in (*vision.encoder.layers[self.used_clip_layers :], vision.post_layernorm):
            module.requires_grad_(False)

    @property
    def used_clip_layers(self) -> int:
        layers = len(self.img_processor.vision_model.encoder.layers)
        return layers + 1 + self.layer_index if self.layer_index < 0 else self.layer_index

    def standin_inputs(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest input the HD transform produces, a 336x336 image: its global view
        plus one crop, all zero. `pixel_values (1, 2, 3, 336, 336)`, `image_sizes (1, 2)`."""
        pixel_values = torch.zeros(1, 2, 3, CROP_SIZE, CROP_SIZE, device=device)
        image_sizes = torch.tensor([[CROP_SIZE, CROP_SIZE]], device=device)
        return pixel_values, image_sizes

    def crop_features(self, crops: torch.Tensor) -> torch.Tensor:
        """(crops, 3, 336, 336) -> CLS-less hidden state of the chosen layer (crops, 576, C)."""
        vision = self.img_processor.vision_model
        hidden = vision.pre_layrnorm(vision.embeddings(crops))
        for layer in vision.encoder.layers[: self.used_clip_layers]:
            hidden = layer(hidden, None)
        return hidden[:, 1:]

    def forward(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
        """Embed images for the language model.

        Args:
            pixel_values: (images, crops+1, 3, 336, 336), global view first, zero padded.
            image_sizes: (images, 2), padded (h, w) of each image.

        Returns:
            (sum of num_image_tokens over images, hidden) in image order.
        """
        grids = [(int(h) // CROP_SIZE, int(w) // CROP_SIZE) for h, w in image_sizes.tolist()]
        for index, (rows, cols) in enumerate(grids):
            if rows < 1 or cols < 1 or rows * cols + 1 > pixel_values.shape[1]:
                raise ValueError(
                    f"image {index}: image_sizes {image_sizes[index].tolist()} needs"
                    f" {rows * cols + 1} crops but pixel_values has {pixel_values.shape[1]}"
                )
        dtype = self.img_projection[0].weight.dtype
        crops = torch.cat(
            [pixel_values[i, : rows * cols + 1] for i, (rows, cols) in enumerate(grids)]
        ).to(dtype)
        merged = self._merge_2x2(self.crop_features(crops))  # (all crops, 12, 12, 4C)
        tokens = []
        start = 0
        for rows, cols in grids:
            tokens.append(self._arrange(merged[start : start + 1 + rows * cols], rows, cols))
            start += 1 + rows * cols
        return self.img_projection(torch.cat(tokens))

    @staticmethod
    def _merge_2x2(features: torch.Tensor) -> torch.Tensor:
        """(n, 576, C) -> (n, 12, 12, 4C), channels ordered (dy, dx, c)."""
        n, patches, channels = features.shape
        side = int(patches**0.5)
        grid = features.reshape(n, side // 2, 2, side // 2, 2, channels)
        return grid.permute(0, 1, 3, 2, 4, 5).reshape(n, side // 2, side // 2, 4 * channels)

    def _with_newlines(self, grid: torch.Tensor) -> torch.Tensor:
        """(rows, cols, D) -> (rows * (cols + 1), D): `sub_GN` closes every row."""
        newline = self.sub_GN.reshape(1, 1, -1).expand(grid.shape[0], 1, -1)
        return torch.cat([grid, newline], dim=1).reshape(-1, grid.shape[-1])

    def _arrange(self, merged: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """One image: merged (1 + rows*cols, 12, 12, D) -> its token sequence (n, D)."""
        width = merged.shape[-1]
        sub = merged[1:].reshape(rows, cols, MERGED_GRID, MERGED_GRID, width)
        sub = sub.permute(0, 2, 1, 3, 4).reshape(rows * MERGED_GRID, cols * MERGED_GRID, width)
        sequence = torch.cat(
            [
                self._with_newlines(sub),
                self.glb_GN.reshape(1, width),
                self._with_newlines(merged[0]),
            ]
        )
        expected = num_image_tokens_for_padded(rows * CROP_SIZE, cols * CROP_SIZE)
        assert sequence.shape[0] == expected, (sequence.shape, expected)
        return sequence
