"""Shared constructed values of the VLM tests."""
from dualdrive.vlm.answer import Finding, SceneObject, VLMAnswer

ANSWER = VLMAnswer(
    road="urban", light="red",
    objects=(SceneObject("car", 20, "ahead", "in my lane"), SceneObject("pedestrian", 10, "ahead", "on the left"),
             SceneObject("ambulance", 35, "behind", "in the left lane")),
    analysis=(Finding("light", "red"), Finding("car", "stopped"), Finding("ambulance", "behind")),
    meta_actions=("slow down", "stop", "wait"), decision="stop at the red light",
    waypoints_m=((8, 0), (14, 0), (15, -1), (15, -1)))


def make_tiny_hf_vlm(out, seed: int = 0):
    """A tiny randomly initialised LLaVA (CLIP vision tower, Llama text model, ~40 k parameters) with a
    byte-level BPE tokenizer trained on driving answers, an image processor and a chat template,
    written with ``save_pretrained`` as a user's downloaded model directory would be: the `hf`
    backend's real loading, prompting and decoding code runs on it without any download.
    (Qwen2-VL's processor needs torchvision, which the CPU install does not carry.)"""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
                              PreTrainedTokenizerFast)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from dualdrive.vlm.answer import render_answer
    from dualdrive.vlm.hf import FORMAT_INSTRUCTIONS
    special = ["<pad>", "<s>", "<|end|>", "<image>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [render_answer(ANSWER), FORMAT_INSTRUCTIONS, "speed 12 m/s. route: turn left in 30 m. describe the scene"]
    tok.train_from_iterator(corpus * 4, trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    chat = ("{% for m in messages %}<|{{ m['role'] }}|>{% if m['content'] is string %}{{ m['content'] }}{% else %}"
            "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}"
            "{% endif %}{% endfor %}{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    ftok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", pad_token="<pad>",
                                   extra_special_tokens={"image_token": "<image>"})
    proc = LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                                crop_size={"height": 32, "width": 32}),
                          tokenizer=ftok, patch_size=8, vision_feature_select_strategy="default", chat_template=chat,
                          num_additional_image_tokens=1)
    ids = {t: tok.token_to_id(t) for t in special}
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                                bos_token_id=ids["<s>"], eos_token_id=ids["<|end|>"], pad_token_id=ids["<pad>"]),
        image_token_index=ids["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1)
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(cfg).eval().save_pretrained(out)
    proc.save_pretrained(out)
    return out
