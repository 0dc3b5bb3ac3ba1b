"""Static facts about the datasets and architectures kdspec knows, shared by every stage.

The compiler uses them to resolve defaults and reject unknown names before anything runs; the
runtime builds exactly these; the analysis labels its tables with the class names. Pure data:
imports nothing from kdspec, torch or torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(i) for i in range(10))

# The 40 binary attributes of CelebA, in the order of list_attr_celeba.txt.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

# Trifeature (Hermann & Lampinen 2020): three 10-valued features, any of which can be the target.
TRIFEATURE_SHAPES = (
    "triangle", "square", "plus", "circle", "tee", "rhombus", "pentagon", "star", "fivesquare",
    "trapezoid",
)
TRIFEATURE_TEXTURES = (
    "solid", "stripes", "grid", "hexgrid", "dots", "noise", "triangles", "zigzags", "rain",
    "pluses",
)
TRIFEATURE_COLORS = (
    "red", "green", "blue", "yellow", "pink", "cyan", "purple", "ocean", "orange", "white",
)
#: HateXplain (Mathew et al., 2021): each post's label is its annotators' majority; the order
#: is the released files' integer coding (0 hatespeech, 1 normal, 2 offensive).
HATEXPLAIN_CLASSES = ("hatespeech", "normal", "offensive")
#: The ten target communities HateXplain's own bias evaluation reports (the communities with
#: the most posts); each is a binary attribute of a post: named by enough of its annotators.
HATEXPLAIN_COMMUNITIES = (
    "African", "Islam", "Jewish", "Homosexual", "Women", "Refugee", "Arab", "Caucasian",
    "Asian", "Hispanic",
)
#: Text datasets take token ids: their tokenizer and sequence length unless the spec sets them.
DEFAULT_TOKENIZER: Final = "bert-base-uncased"
DEFAULT_MAX_LENGTH: Final = 128
#: A post belongs to a community when at least this many of its three annotators named it.
DEFAULT_COMMUNITY_VOTES: Final = 2
#: Generated Trifeature deals every shape x texture x colour combination out equally often, as
#: The synthetic CIFAR-shaped dataset (benchmarks without a download): 10 classes, 32 px RGB,
#: CIFAR-10's split sizes unless the spec gives generated_train / generated_test.
SYNTHETIC_CLASSES: Final = tuple(f"class_{i}" for i in range(10))
SYNTHETIC_DEFAULT_SIZES: Final = (50_000, 10_000)
#: Generated datasets whose feature combinations a spec can choose (``combinations = ...``).
COMBINATION_DATASETS: Final = ("trifeature",)
#: the original dataset is balanced ("independent" draws each feature on its own).
TRIFEATURE_DEFAULT_COMBINATIONS: Final = "balanced"
TRIFEATURE_FEATURES = {
    "shape": TRIFEATURE_SHAPES,
    "texture": TRIFEATURE_TEXTURES,
    "color": TRIFEATURE_COLORS,
}
#: Distinct (shape, texture, colour) kinds of image.
TRIFEATURE_COMBINATION_COUNT = len(TRIFEATURE_SHAPES) * len(TRIFEATURE_TEXTURES) * len(
    TRIFEATURE_COLORS)
#: A balanced split of a multiple of this size holds every pair of values of any two features
#: equally often (each feature has 10 values), so a perfect classifier's DPD/EOD is 0 exactly.
TRIFEATURE_BALANCED_MULTIPLE = len(TRIFEATURE_SHAPES) * len(TRIFEATURE_COLORS)


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset is before any option: shape, classes, attributes, sizes, defaults."""

    name: str
    channels: int
    image_size: int
    class_names: tuple[str, ...]
    train_size: int | None  # None: depends on the files or the generator options
    test_size: int | None
    default_augment: str
    #: Per-sample attributes the dataset provides (usable as target or sensitive attribute).
    attributes: tuple[str, ...] = ()
    #: Attribute name -> value names, for attributes usable as a (multiclass) target.
    attribute_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    resizable: bool = False  # whether image_size may be chosen in the spec
    fairness_dataset: bool = False  # whether it has a target and sensitive attributes
    #: Generated datasets: (train, test) images made when the spec gives no sizes.
    default_generated_sizes: tuple[int, int] | None = None
    how_to_get: str = ""
    #: Per-channel pixel mean and std in [0, 1] (a plugin's; kdspec's own are in runtime.data).
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    #: "image" (inputs ``[C, H, W]``) or "text" (inputs are token ids; ``channels`` and
    #: ``image_size`` are then 1 and mean nothing).
    modality: str = "image"


DATASETS: dict[str, DatasetFacts] = {
    "cifar10": DatasetFacts(
        "cifar10", 3, 32, CIFAR10_CLASSES, 50_000, 10_000, "crop_flip",
        how_to_get="set download = true, or put cifar-10-batches-py/ under root",
    ),
    "cifar100": DatasetFacts(
        "cifar100", 3, 32, CIFAR100_CLASSES, 50_000, 10_000, "crop_flip",
        how_to_get="set download = true, or put cifar-100-python/ under root",
    ),
    "svhn": DatasetFacts(
        "svhn", 3, 32, DIGIT_CLASSES, 73_257, 26_032, "crop",
        how_to_get="set download = true, or put train_32x32.mat and test_32x32.mat under root",
    ),
    "fashion_mnist": DatasetFacts(
        "fashion_mnist", 1, 28, FASHION_MNIST_CLASSES, 60_000, 10_000, "crop_flip",
        how_to_get=(
            "apt-get install dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist),"
            " set download = true, or put FashionMNIST/raw/ under root"
        ),
    ),
    "imagenet": DatasetFacts(
        "imagenet", 3, 224, tuple(str(i) for i in range(1000)), 1_281_167, 50_000, "imagenet",
        resizable=True,
        how_to_get="put the ILSVRC2012 train/ and val/ class folders under root",
    ),
    "celeba": DatasetFacts(
        "celeba", 3, 64, (), 162_770, 19_962, "flip", attributes=CELEBA_ATTRIBUTES,
        attribute_values={a: (f"not {a}", a) for a in CELEBA_ATTRIBUTES},
        resizable=True, fairness_dataset=True,
        how_to_get="set download = true, or put celeba/ (img_align_celeba/, list_attr_celeba.txt,"
        " list_eval_partition.txt, ...) under root",
    ),
    "synthetic": DatasetFacts(
        "synthetic", 3, 32, SYNTHETIC_CLASSES, None, None, "crop_flip",
        default_generated_sizes=SYNTHETIC_DEFAULT_SIZES,
        how_to_get="generated by kdspec (deterministic, nothing to download)",
    ),
    "trifeature": DatasetFacts(
        "trifeature", 3, 224, (), None, None, "none", attributes=("shape", "texture", "color"),
        attribute_values=dict(TRIFEATURE_FEATURES), resizable=True, fairness_dataset=True,
        default_generated_sizes=(10_000, 2_000),
        how_to_get="generated by kdspec into root (default ~/.cache/kdspec/trifeature)",
    ),
    "tiny_imagenet": DatasetFacts(
        "tiny_imagenet", 3, 64, tuple(str(i) for i in range(200)), 100_000, 10_000, "crop_flip",
        how_to_get="unzip tiny-imagenet-200.zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip)"
        " under root: tiny-imagenet-200/train/<wnid>/images, tiny-imagenet-200/val/images and "
        "val/val_annotations.txt",
    ),
    "imagefolder": DatasetFacts(
        "imagefolder", 3, 32, (), None, None, "none", resizable=True, fairness_dataset=True,
        how_to_get="root = a folder holding train/<class>/ and test/<class>/ image folders "
        "(docs/datasets.md, 'Your own images')",
    ),
    "hatexplain": DatasetFacts(
        "hatexplain", 1, 1, HATEXPLAIN_CLASSES, 15_383, 1_924, "none",
        attributes=HATEXPLAIN_COMMUNITIES, fairness_dataset=True, modality="text",
        how_to_get="set root to the authors' Data/ folder (github.com/hate-alert/HateXplain),"
        " which holds dataset.json and post_id_divisions.json",
    ),
    "digits": DatasetFacts(
        "digits", 1, 8, DIGIT_CLASSES, 1_437, 360, "none",
        how_to_get="ships with scikit-learn (sklearn.datasets.load_digits)",
    ),
}


@dataclass(frozen=True)
class ArchFacts:
    """An architecture: its family, size and cost at a reference input, and where feature
    distillation can read it.

    ``feature_points``: the names of the modules whose outputs are the model's stage features,
    in forward order (``model.get_submodule(name)``; e.g. a CIFAR ResNet's ``layer1``,
    ``layer2``, ``layer3``). Feature methods (fitnet, at) read them with forward hooks, and a
    model that names none cannot be distilled by them. ``classifier``: the name of the final
    linear layer, whose *input* is the penultimate embedding CRD contrasts (empty: none named).
    A plugin may name both for its own architectures.
    """

    name: str
    family: str  # cifar_resnet | cifar_resnet_x4 | wide_resnet | cifar_vgg | lenet | torchvision_*
    params_millions: float  # published parameter count at the family's usual class count
    forward_mflops: float  # 2 x multiply-adds for one image at ref_size (ref channels, classes)
    ref_size: int
    min_size: int  # smallest input side it accepts
    feature_points: tuple[str, ...] = ()
    classifier: str = ""


CIFAR_RESNET_POINTS: Final = ("layer1", "layer2", "layer3")
TORCHVISION_RESNET_POINTS: Final = ("layer1", "layer2", "layer3", "layer4")
DENSENET_POINTS: Final = tuple(f"features.denseblock{i}" for i in range(1, 5))
WIDE_RESNET_POINTS: Final = ("block1", "block2", "block3")
#: The CRD benchmark's VGG features start after block 0 (its methods never read block 0).
CIFAR_VGG_POINTS: Final = ("block1", "block2", "block3", "block4")

ARCHITECTURES: dict[str, ArchFacts] = {
    "resnet20": ArchFacts("resnet20", "cifar_resnet", 0.27, 81.0, 32, 8, CIFAR_RESNET_POINTS,
                          "fc"),
    "resnet32": ArchFacts("resnet32", "cifar_resnet", 0.46, 139.0, 32, 8, CIFAR_RESNET_POINTS,
                          "fc"),
    "resnet44": ArchFacts("resnet44", "cifar_resnet", 0.66, 196.0, 32, 8, CIFAR_RESNET_POINTS,
                          "fc"),
    "resnet56": ArchFacts("resnet56", "cifar_resnet", 0.85, 251.0, 32, 8, CIFAR_RESNET_POINTS,
                          "fc"),
    "resnet110": ArchFacts("resnet110", "cifar_resnet", 1.7, 506.0, 32, 8, CIFAR_RESNET_POINTS,
                           "fc"),
    "lenet5": ArchFacts("lenet5", "lenet", 0.062, 1.3, 32, 8, ("pool1", "pool2"), "fc3"),
    "resnet18": ArchFacts("resnet18", "torchvision_resnet", 11.7, 3640.0, 224, 8,
                          TORCHVISION_RESNET_POINTS, "fc"),
    "resnet34": ArchFacts("resnet34", "torchvision_resnet", 21.8, 7340.0, 224, 8,
                          TORCHVISION_RESNET_POINTS, "fc"),
    "resnet50": ArchFacts("resnet50", "torchvision_resnet", 25.6, 8180.0, 224, 8,
                          TORCHVISION_RESNET_POINTS, "fc"),
    "densenet121": ArchFacts("densenet121", "torchvision_densenet", 8.0, 5740.0, 224, 8,
                             DENSENET_POINTS, "classifier"),
    "densenet169": ArchFacts("densenet169", "torchvision_densenet", 14.1, 6800.0, 224, 8,
                             DENSENET_POINTS, "classifier"),
    # The CIFAR-100 benchmark of the CRD paper (Tian et al., ICLR 2020), as its code defines
    # the models: parameters with 100 classes, FLOPs counted at 32x32 (tests/runtime).
    "resnet8x4": ArchFacts("resnet8x4", "cifar_resnet_x4", 1.23, 354.1, 32, 8,
                           CIFAR_RESNET_POINTS, "fc"),
    "resnet32x4": ArchFacts("resnet32x4", "cifar_resnet_x4", 7.43, 2166.1, 32, 8,
                            CIFAR_RESNET_POINTS, "fc"),
    "wrn_40_2": ArchFacts("wrn_40_2", "wide_resnet", 2.26, 655.2, 32, 8, WIDE_RESNET_POINTS,
                          "fc"),
    "wrn_16_2": ArchFacts("wrn_16_2", "wide_resnet", 0.70, 202.2, 32, 8, WIDE_RESNET_POINTS,
                          "fc"),
    "vgg8": ArchFacts("vgg8", "cifar_vgg", 3.96, 192.4, 32, 8, CIFAR_VGG_POINTS, "classifier"),
    "vgg13": ArchFacts("vgg13", "cifar_vgg", 9.46, 569.9, 32, 8, CIFAR_VGG_POINTS,
                       "classifier"),
}


def forward_flops(facts: ArchFacts, image_size: int) -> float | None:
    """Approximate forward FLOPs of one image, scaling the reference cost with the pixel count;
    None when the architecture's cost is not known (a torchvision or timm model)."""
    if facts.forward_mflops <= 0:
        return None
    return facts.forward_mflops * 1e6 * (image_size / facts.ref_size) ** 2
