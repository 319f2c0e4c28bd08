"""CPU features that decide whether INT8 can be fast, read from /proc/cpuinfo."""

from edge_fer.runtime.cpu import cpu_info

ZEN3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n"
ZEN4 = "model name\t: AMD EPYC 9B14\nflags\t\t: sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
SAPPHIRE = (
    "model name\t: Intel Xeon 8481C\nflags\t\t: sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"
)
ORIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp\n"
CORTEX_A57 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"  # Jetson Nano


def test_int8_dot_product_and_summaries():
    cases = {
        ZEN3: ("AVX2 only (no VNNI, no BF16)", False, "x86_64"),
        ZEN4: ("AVX-512 + VNNI + BF16", True, "x86_64"),
        SAPPHIRE: ("AVX-512 + VNNI + AMX + BF16", True, "x86_64"),
        ORIN: ("ARM NEON + dot-product", True, "aarch64"),
        CORTEX_A57: ("ARM NEON (no INT8 dot product)", False, "aarch64"),
    }
    for text, (summary, dot, arch) in cases.items():
        info = cpu_info(text)
        assert (info.summary, info.int8_dot_product, info.arch) == (summary, dot, arch), text


def test_this_machine_and_the_cache_key():
    info = cpu_info()
    assert info.cores >= 1 and info.model
    assert info.key.startswith(info.model) and all(f in info.key for f in info.features)
    assert cpu_info(ZEN3).key != cpu_info(ZEN4).key


def test_onednn_cap_cuts_the_features_the_kernels_may_use(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    capped = cpu_info(SAPPHIRE)
    assert capped.features == ("avx2",) and not capped.int8_dot_product and not capped.bf16
    assert capped.summary == "AVX2 only (no VNNI, no BF16), capped by ONEDNN_MAX_CPU_ISA=AVX2"
    assert capped.to_dict()["capped"] == "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2_VNNI")
    alder = cpu_info(SAPPHIRE.replace("avx2 ", "avx2 avx_vnni "))
    assert alder.features == ("avx2", "avx_vnni") and alder.int8_dot_product
    assert cpu_info(ORIN).summary == "ARM NEON + dot-product"  # an x86 cap says nothing about ARM
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # within AVX-512: not modelled, unchanged
    assert cpu_info(SAPPHIRE).summary == "AVX-512 + VNNI + AMX + BF16"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert cpu_info(SAPPHIRE).key != capped.key and cpu_info(SAPPHIRE).capped is None
