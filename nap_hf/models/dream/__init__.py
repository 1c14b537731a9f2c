from .configuration_dream import DreamConfig
from .modeling_dream import DreamBaseModel, DreamModel, DreamPreTrainedModel
from .tokenization_dream import DreamTokenizer

__all__ = ["DreamConfig", "DreamModel", "DreamBaseModel", "DreamPreTrainedModel", "DreamTokenizer"]
