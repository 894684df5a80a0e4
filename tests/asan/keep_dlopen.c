/*
 * keep_dlopen.c: a preloaded library for `make test-asan` that makes dlclose() a no-op.
 *
 * Open MPI and PMIx unload their plugins (mca_*.so) at MPI_Finalize. LeakSanitizer
 * reports at exit, when those plugins are gone, so their own leaks show as
 * "<unknown module>" and no suppression can name them (tests/asan/lsan.supp names
 * libraries). Keeping every library mapped until the process ends changes nothing else:
 * nothing in saev-c or its tests relies on a library being unloaded.
 */
int dlclose(void *handle) {
    (void)handle;
    return 0;
}
