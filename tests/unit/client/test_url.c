/* test_url.c - the URL handling of `tlsloop get` (tools/url.c): parsing, and resolving a
 * Location header's value against the URL it came from as RFC 3986 section 5.2 says, with the
 * section 5.4 examples (normal and abnormal) and the forms servers send. Pure functions: no
 * network. The tool's source is compiled into this test (it is not part of the library). */
#include "../../../tools/url.c"

#include "test.h"

/* Resolve ref against base and render the result as scheme://authority/target. */
static const char *resolved(const char *base, const char *ref)
{
    static char out[5000];
    url b, r;
    char err[400];
    if (parse_url(base, &b, err, sizeof err) != 0)
        return "bad base";
    if (resolve_url(&b, ref, &r, err, sizeof err) != 0) {
        snprintf(out, sizeof out, "error: %s", err);
        return out;
    }
    snprintf(out, sizeof out, "%s://%s%s", r.tls ? "https" : "http", r.authority, r.target);
    return out;
}

TEST(rfc3986_normal_examples)
{
    /* Section 5.4.1, base http://a/b/c/d;p?q ("g:h" is another scheme: not ours to follow). */
    static const char *const cases[][2] = {
        {"g", "http://a/b/c/g"},         {"./g", "http://a/b/c/g"},
        {"g/", "http://a/b/c/g/"},       {"/g", "http://a/g"},
        {"//g", "http://g/"},            {"?y", "http://a/b/c/d;p?y"},
        {"g?y", "http://a/b/c/g?y"},     {"#s", "http://a/b/c/d;p?q"},
        {"g#s", "http://a/b/c/g"},       {"g?y#s", "http://a/b/c/g?y"},
        {";x", "http://a/b/c/;x"},       {"g;x", "http://a/b/c/g;x"},
        {"g;x?y#s", "http://a/b/c/g;x?y"}, {"", "http://a/b/c/d;p?q"},
        {".", "http://a/b/c/"},          {"./", "http://a/b/c/"},
        {"..", "http://a/b/"},           {"../", "http://a/b/"},
        {"../g", "http://a/b/g"},        {"../..", "http://a/"},
        {"../../../", "http://a/"},         {"../../g", "http://a/g"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_STR(resolved("http://a/b/c/d;p?q", cases[i][0]), cases[i][1]);
    CHECK_HAS(resolved("http://a/b/c/d;p?q", "g:h"), "not an http:// or https:// URL");
}

TEST(rfc3986_abnormal_examples)
{
    /* Section 5.4.2. */
    static const char *const cases[][2] = {
        {"../../../../g", "http://a/g"},    {"../../../../g", "http://a/g"},
        {"/./g", "http://a/g"},          {"/../g", "http://a/g"},
        {"g.", "http://a/b/c/g."},       {".g", "http://a/b/c/.g"},
        {"g..", "http://a/b/c/g.."},     {"..g", "http://a/b/c/..g"},
        {"./../g", "http://a/b/g"},      {"./g/.", "http://a/b/c/g/"},
        {"g/./h", "http://a/b/c/g/h"},   {"g/../h", "http://a/b/c/h"},
        {"g;x=1/./y", "http://a/b/c/g;x=1/y"}, {"g;x=1/../y", "http://a/b/c/y"},
        {"g?y/./x", "http://a/b/c/g?y/./x"},   {"g?y/../x", "http://a/b/c/g?y/../x"},
        {"g#s/./x", "http://a/b/c/g"},   {"g#s/../x", "http://a/b/c/g"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_STR(resolved("http://a/b/c/d;p?q", cases[i][0]), cases[i][1]);
}

TEST(forms_servers_send)
{
    /* The scheme of the base for "//host", its port kept for paths, dots removed everywhere. */
    CHECK_STR(resolved("https://h:8443/a/b", "//other:9/x"), "https://other:9/x");
    CHECK_STR(resolved("https://h:8443/a/b", "/x?y=1"), "https://h:8443/x?y=1");
    CHECK_STR(resolved("https://h:8443/a/b", "c"), "https://h:8443/a/c");
    CHECK_STR(resolved("https://h:8443/a/", "?page=2"), "https://h:8443/a/?page=2");
    CHECK_STR(resolved("https://h:8443/", "HTTP://Other/a/../b"), "http://Other/b");
    CHECK_STR(resolved("http://[::1]:8080/a", "b"), "http://[::1]:8080/b");
    CHECK_STR(resolved("http://h/a", "/a b"),
              "error: /a b: spaces and control characters must be %-encoded");
    CHECK_HAS(resolved("http://h/a", "ftp://h/x"), "not an http:// or https:// URL");
    CHECK_HAS(resolved("http://h/a", "http:/x"), "not an http:// or https:// URL");
    CHECK_HAS(resolved("http://h/a", "https://user@h/x"), "user names in URLs are not supported");
}

TEST(dot_segments)
{
    static const char *const cases[][2] = {
        {"/a/b/c/./../../g", "/a/g"}, {"mid/content=5/../6", "mid/6"}, {"/..", "/"},
        {"/.", "/"},                  {"/a/..", "/"},                  {"/a/b/..", "/a/"},
        {"/a//b/../c", "/a//c"},      {"", ""},                        {"../x/./y", "x/y"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[64];
        snprintf(p, sizeof p, "%s", cases[i][0]);
        remove_dot_segments(p);
        CHECK_STR(p, cases[i][1]);
    }
}

TEST(origins)
{
    url a, b;
    char err[200];
    REQUIRE(parse_url("https://Host.test/x", &a, err, sizeof err) == 0);
    REQUIRE(parse_url("https://host.test:443/y", &b, err, sizeof err) == 0);
    CHECK(same_origin(&a, &b));                              /* the default port, any case */
    REQUIRE(parse_url("https://host.test:8443/", &b, err, sizeof err) == 0);
    CHECK(!same_origin(&a, &b));                             /* another port */
    REQUIRE(parse_url("http://host.test:443/", &b, err, sizeof err) == 0);
    CHECK(!same_origin(&a, &b));                             /* another scheme */
    REQUIRE(parse_url("https://other.test/", &b, err, sizeof err) == 0);
    CHECK(!same_origin(&a, &b));                             /* another host */
}

int main(int argc, char **argv)
{
    TEST_MAIN_BEGIN(argc, argv);
    RUN(rfc3986_normal_examples);
    RUN(rfc3986_abnormal_examples);
    RUN(forms_servers_send);
    RUN(dot_segments);
    RUN(origins);
    TEST_MAIN_END();
}
