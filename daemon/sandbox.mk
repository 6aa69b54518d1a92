# daemon/sandbox.c loads a seccomp filter with libseccomp (libseccomp-dev, scripts/install-deps.sh).
# Appended here so every link that takes $(CORE_LIB) can resolve it; the recipes expand
# DEP_LIBS when they run, after this fragment is read.
DEP_LIBS += $(shell $(PKG) --libs libseccomp 2>/dev/null || echo -lseccomp)
