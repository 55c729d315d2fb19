"""Oracle suite: deliberately naive re-implementations of the reference's semantics (honest_llama's
legacy llama_utils.py / llama_validate_2fold.py, TruthfulQA's run_probs + MC_calcs), written
without itictl's helpers, and tests that itictl's public functions agree with them.

reference.py holds the oracle (one question and one answer per forward, no packing, no caching,
interventions by a forward hook on each layer's o_proj input like `lt_modulated_vector_add`).
The MC oracle takes a protocol (`MCProtocol`: prompt tail, answer join, edit start, skipped
answer tokens): itictl's (ITICTL) and the reference's literal one (REFERENCE).
"""
