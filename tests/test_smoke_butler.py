def test_put_get_roundtrip(butler):
    ref = butler.put({"a": 1.5}, "metrics", instrument="Cam", visit=1, detector=2)
    assert butler.get("metrics", instrument="Cam", visit=1, detector=2) == {"a": 1.5}
    assert butler.get(ref) == {"a": 1.5}
    assert "metrics_Cam_1_2.json" in butler.get_uri(ref)
