class CudaRing:  # placeholder until written
    pass
