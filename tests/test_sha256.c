/*
 * test_sha256.c: SHA-256 against the FIPS 180-4 example vectors (NIST CSRC "SHA256.pdf":
 * "abc", the 448-bit two-block message) and the empty string's well-known digest, plus
 * lengths around the padding boundary (55, 56, 63, 64 bytes) against Python's hashlib
 * values written here (hashlib.sha256(b"a" * n).hexdigest()).
 */
#include <check.h>
#include <string.h>

#include "sha256.h"
#include "testutil.h"

static void expect(const char *msg, size_t len, const char *want) {
    char hex[65];
    sha256_hex(msg, len, hex);
    ck_assert_str_eq(hex, want);
}

START_TEST(test_vectors) {
    expect("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    expect(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

START_TEST(test_padding_boundaries) {
    char a[64];
    memset(a, 'a', sizeof a);
    expect(a, 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    expect(a, 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    expect(a, 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34");
    expect(a, 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}
END_TEST

int main(void) {
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_vectors);
    tcase_add_test(tc, test_padding_boundaries);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
