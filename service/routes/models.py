"""The model catalog: what `model=` accepts."""

from __future__ import annotations

from fastapi import APIRouter

from model_store.card import Catalog, ModelCard
from service.deps import ServicesDep
from srserve.schemas import ModelList, ModelQuality, ModelView

router = APIRouter(prefix="/v1", tags=["models"])


def model_view(card: ModelCard, catalog: Catalog) -> ModelView:
    defaults = [
        s for s in card.scales if (d := catalog.default_for(s, card.kind)) is not None and d.name == card.name
    ]
    return ModelView(
        name=card.name,
        family=card.family,
        architecture=card.architecture,
        kind=card.kind,
        scales=card.scales,
        channels=card.channels,
        params=card.params,
        flops_per_output_pixel=card.flops_per_output_pixel,
        weights_sha256=card.weights_sha256,
        min_frames=card.min_frames,
        max_frames=card.max_frames,
        default_for_scales=defaults,
        quality=[
            ModelQuality(
                dataset=r.dataset,
                scale=r.scale,
                psnr_y=r.psnr_y,
                ssim_y=r.ssim_y,
                paper_psnr_y=r.paper_psnr_y,
            )
            for r in card.results
        ],
        bf16_on_cuda=card.half_precision_safe,
        cpu_bf16_psnr_delta=card.cpu_bf16_psnr_delta,
        source=card.source,
        licence=card.licence,
        paper=card.paper,
        notes=card.notes,
    )


@router.get("/models", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """Every installed model: architecture, scales, size, measured quality, and where it is the default."""
    catalog = services.catalog
    return ModelList(models=[model_view(catalog.get(name), catalog) for name in catalog.names()])
