import pytest
import torch

from pathattr import zoo
from pathattr.zoo import digits


@pytest.mark.slow
def test_efficientnet_sees_a_cat_in_chelsea():
    model = zoo.efficientnet_lite0()
    assert not model.training
    x = zoo.photo_batch(["chelsea"])
    with torch.inference_mode():
        p = model(x).softmax(-1)[0]
    top = int(p.argmax())
    assert 281 <= top <= 285, zoo.class_name(top)
    assert p[281:286].sum() > 0.5
    assert "cat" in zoo.class_name(top)


def test_photos_preprocess_to_model_input():
    assert set(zoo.PHOTOS) >= {"chelsea", "camera", "grace_hopper"}
    for name in ("camera", "grace_hopper"):
        img = zoo.photo(name)
        assert img.mode == "RGB"
    x = zoo.photo_batch(["camera", "grace_hopper"])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert x.min() >= -127 / 128 and x.max() <= 128 / 128
    assert torch.allclose(zoo.unpreprocess(x) * 255, (x * 128 + 127))
    with pytest.raises(ValueError, match="unknown photo 'dog'"):
        zoo.photo("dog")


def test_digits_cnn_accuracy_cache_and_determinism(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHATTR_CACHE", str(tmp_path / "a"))
    model = zoo.digits_cnn()
    path = digits.weights_path()
    assert path.parent == tmp_path / "a" and path.exists()
    assert not list(path.parent.glob("*.tmp"))
    x_train, y_train, x_test, y_test = zoo.digits_data()
    assert x_train.shape[1:] == (1, 8, 8) and x_test.min() >= 0 and x_test.max() <= 1
    assert len(x_train) + len(x_test) == 1797
    with torch.inference_mode():
        acc = (model(x_test).argmax(1) == y_test).float().mean()
    assert acc >= 0.93
    assert dict(model.named_modules())["features.conv2"].out_channels == 32

    cached = torch.load(path, weights_only=True)
    rng = torch.random.get_rng_state()
    again = digits.train_digits_cnn()  # a second, independent training
    assert torch.equal(rng, torch.random.get_rng_state())
    assert cached.keys() == again.keys()
    assert all(torch.equal(cached[k], again[k]) for k in cached)
    reloaded = zoo.digits_cnn()  # from the cache this time
    assert all(torch.equal(v, cached[k]) for k, v in reloaded.state_dict().items())
    path.write_bytes(path.read_bytes()[:100])  # a truncated cache: named, rebuilt
    with pytest.warns(UserWarning, match=f"{path.name}.* do not load"):
        rebuilt = zoo.digits_cnn()
    assert all(torch.equal(v, cached[k]) for k, v in rebuilt.state_dict().items())
    assert torch.load(path, weights_only=True).keys() == cached.keys()


@pytest.mark.slow
def test_minilm_similarity_ranks_paraphrases_first():
    tok, model = zoo.minilm()
    assert dict(model.named_modules())[zoo.WORD_EMBEDDINGS].embedding_dim == 384
    sim = zoo.similarity_model(tok, model, "A cat is sitting on the mat.")
    enc = tok(["A kitten sits on a rug.", "The stock market fell sharply today."],
              return_tensors="pt", padding=True)
    with torch.inference_mode():
        s = sim(enc["input_ids"], enc["attention_mask"])
        emb = model(enc["input_ids"], enc["attention_mask"])
        one = sim(enc["input_ids"][:1])  # no mask: all tokens count
    assert emb.shape == (2, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert s.shape == (2,) and s[0] > s[1] + 0.3
    assert one.shape == (1,)
