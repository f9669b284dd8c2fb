"""Algorithm extraction: from trained weights to an explicit, verified EAGLE iteration."""

from eaglelab.extract.algorithm import ExtractedAlgorithm, eagle_layers
from eaglelab.extract.fidelity import layer_fidelity, layer_quantities, nystrom_mse
from eaglelab.extract.pipeline import Extraction, SeedExtraction, extract, held_out
from eaglelab.extract.products import LayerProducts, model_products, products_forward
from eaglelab.extract.properties import block_structure, numerical_rank, sketch_comparison
from eaglelab.extract.residue import residue_attribution, structured_products
from eaglelab.extract.scaling import batch_max_norms, fit_constant, layer_steps, learned_sketch
from eaglelab.extract.simplify import quantise, simplify_products, sparsify

__all__ = [
    "ExtractedAlgorithm",
    "Extraction",
    "LayerProducts",
    "SeedExtraction",
    "batch_max_norms",
    "block_structure",
    "eagle_layers",
    "extract",
    "fit_constant",
    "held_out",
    "layer_fidelity",
    "layer_quantities",
    "layer_steps",
    "learned_sketch",
    "model_products",
    "numerical_rank",
    "nystrom_mse",
    "products_forward",
    "quantise",
    "residue_attribution",
    "simplify_products",
    "sketch_comparison",
    "sparsify",
    "structured_products",
]
