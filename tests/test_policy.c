/*
 * The escalation policy file: the documented example loads with every field
 * as written and every default as documented; each kind of mistake is refused
 * with a message that names the field, what was expected and what was found;
 * keys are neither needed to load nor ever echoed; hostile files (truncated,
 * bit-flipped) are errors, never crashes.
 */
#include "core/error.h"
#include "routing/policy.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The example of docs/escalation.md, without its terms_file (tested on its own below). */
static const char example[] =
    "{\n"
    "  \"escalation\": \"auto\",\n"
    "  \"upstreams\": [\n"
    "    {\"name\": \"home-server\", \"kind\": \"openai\", \"base_url\": \"http://192.168.1.20:8080/v1/\",\n"
    "     \"model\": \"qwen2.5-7b\", \"consent\": \"always\", \"timeout_s\": 60, \"max_retries\": 1},\n"
    "    {\"name\": \"claude\", \"kind\": \"anthropic\", \"model\": \"claude-sonnet-4-20250514\",\n"
    "     \"api_key_env\": \"ANTHROPIC_API_KEY\", \"consent\": \"ask\", \"max_tokens\": 2048,\n"
    "     \"connect_timeout_s\": 5, \"stall_timeout_s\": 20},\n"
    "    {\"name\": \"gemini\", \"kind\": \"gemini\", \"model\": \"gemini-2.0-flash\",\n"
    "     \"api_key_env\": \"GEMINI_API_KEY\", \"consent\": \"never\"}\n"
    "  ],\n"
    "  \"rules\": [\n"
    "    {\"when\": \"explicit\"},\n"
    "    {\"when\": \"context_overflow\", \"upstream\": \"home-server\"},\n"
    "    {\"when\": \"uncertain\", \"upstream\": \"claude\", \"first_tokens\": 24,\n"
    "     \"min_token_prob_quantile\": {\"q\": 0.1, \"below\": 0.2},\n"
    "     \"entropy_quantile\": {\"q\": 0.9, \"above\": 3.0}}\n"
    "  ],\n"
    "  \"redaction\": {\"enabled\": true, \"types\": [\"email\", \"phone\", \"card\", \"iban\"],\n"
    "                \"terms\": [\"Alice Example\", \"42 Example Street\"]}\n"
    "}\n";

static plm_policy *parse_ok(const char *json)
{
    plm_policy *policy = NULL;
    int rc = policy_parse(json, strlen(json), "policy.json", NULL, &policy);
    if (rc)
        fail_msg("refused: %s", plm_last_error());
    return policy;
}

static void example_loads(void **state)
{
    (void)state;
    unsetenv("ANTHROPIC_API_KEY"); /* keys are not needed to load */
    plm_policy *policy = parse_ok(example);
    assert_false(plm_policy_never(policy));
    assert_int_equal(plm_policy_upstream_count(policy), 3);

    const struct plm_upstream *home = plm_policy_upstream(policy, 0);
    assert_string_equal(home->name, "home-server");
    assert_int_equal(home->kind, PLM_UPSTREAM_OPENAI);
    assert_string_equal(home->base_url, "http://192.168.1.20:8080/v1"); /* trailing slash dropped */
    assert_string_equal(home->model, "qwen2.5-7b");
    assert_null(home->api_key_env);
    assert_int_equal(home->consent, PLM_CONSENT_ALWAYS);
    assert_true(home->timeout_s == 60);
    assert_int_equal(home->max_retries, 1);
    assert_int_equal(home->max_tokens, 0);
    assert_true(home->connect_timeout_s == 10 && home->stall_timeout_s == 30);

    const struct plm_upstream *claude = plm_policy_find_upstream(policy, "claude");
    assert_non_null(claude);
    assert_int_equal(claude->kind, PLM_UPSTREAM_ANTHROPIC);
    assert_string_equal(claude->base_url, "https://api.anthropic.com"); /* the kind's default */
    assert_string_equal(claude->api_key_env, "ANTHROPIC_API_KEY");
    assert_int_equal(claude->consent, PLM_CONSENT_ASK);
    assert_int_equal(claude->max_tokens, 2048);
    assert_true(claude->timeout_s == 120 && claude->connect_timeout_s == 5 && claude->stall_timeout_s == 20);
    assert_int_equal(claude->max_retries, 2);

    const struct plm_upstream *gemini = plm_policy_upstream(policy, 2);
    assert_string_equal(gemini->base_url, "https://generativelanguage.googleapis.com/v1beta");
    assert_int_equal(gemini->consent, PLM_CONSENT_NEVER);
    assert_null(plm_policy_upstream(policy, 3));
    assert_null(plm_policy_upstream(policy, -1));

    assert_int_equal(policy->n_rules, 3);
    assert_int_equal(policy->rules[0].when, POLICY_EXPLICIT);
    assert_int_equal(policy->rules[0].upstream, -1);
    assert_int_equal(policy->rules[1].when, POLICY_CONTEXT_OVERFLOW);
    assert_int_equal(policy->rules[1].upstream, 0);
    const struct policy_rule *unsure = &policy->rules[2];
    assert_int_equal(unsure->when, POLICY_UNCERTAIN);
    assert_int_equal(unsure->upstream, 1);
    assert_int_equal(unsure->first_tokens, 24);
    assert_true(unsure->min_token_prob.enabled && unsure->min_token_prob.q == 0.1 && unsure->min_token_prob.limit == 0.2);
    assert_true(unsure->entropy.enabled && unsure->entropy.q == 0.9 && unsure->entropy.limit == 3.0);
    assert_string_equal(policy_trigger_name(unsure->when), "uncertain");

    assert_true(policy->redaction.enabled);
    uint32_t want = 1u << PLM_REDACT_EMAIL | 1u << PLM_REDACT_PHONE | 1u << PLM_REDACT_CARD |
                    1u << PLM_REDACT_IBAN | 1u << PLM_REDACT_TERM;
    assert_int_equal(policy->redaction.types, want);
    assert_int_equal(policy->redaction.n_terms, 2);
    assert_string_equal(policy->redaction.terms[0], "Alice Example");
    assert_string_equal(policy->redaction.terms[1], "42 Example Street");

    assert_int_equal(plm_upstream_ready(claude), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "ANTHROPIC_API_KEY"));
    assert_int_equal(plm_upstream_ready(home), PLM_OK); /* no key needed */
    setenv("ANTHROPIC_API_KEY", "sk-ant-test", 1);
    assert_int_equal(plm_upstream_ready(claude), PLM_OK);
    unsetenv("ANTHROPIC_API_KEY");

    assert_null(plm_policy_find_upstream(policy, "gpt-9"));
    assert_non_null(strstr(plm_last_error(), "no upstream named 'gpt-9'"));
    assert_non_null(strstr(plm_last_error(), "home-server, claude, gemini"));
    plm_policy_free(policy);
}

static void minimal_policies(void **state)
{
    (void)state;
    plm_policy *policy = parse_ok("{}");
    assert_false(plm_policy_never(policy));
    assert_int_equal(plm_policy_upstream_count(policy), 0);
    assert_int_equal(policy->n_rules, 0);
    /* No "redaction": every detector. */
    assert_true(policy->redaction.enabled);
    for (int type = 0; type < PLM_REDACT_N_TYPES; type++)
        assert_true(policy->redaction.types & (1u << type));
    plm_policy_free(policy);

    policy = parse_ok("{\"escalation\": \"never\", \"redaction\": {\"enabled\": false, \"types\": []}}");
    assert_true(plm_policy_never(policy));
    assert_false(policy->redaction.enabled);
    assert_int_equal(policy->redaction.types, 1u << PLM_REDACT_TERM); /* never 0, which would mean all */
    plm_policy_free(policy);

    policy = parse_ok("{\"upstreams\": [{\"name\": \"u\", \"kind\": \"openai\", \"model\": \"m\"}],"
                      " \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"u\","
                      " \"entropy_quantile\": {\"q\": 0.5, \"above\": 2}}],"
                      " \"redaction\": {\"terms\": [\"Bob\"]}}");
    assert_int_equal(policy->rules[0].first_tokens, 16); /* default K */
    assert_false(policy->rules[0].min_token_prob.enabled);
    assert_true(policy->redaction.types & (1u << PLM_REDACT_EMAIL)); /* no "types": all */
    assert_int_equal(plm_policy_upstream(policy, 0)->consent, PLM_CONSENT_ASK); /* default consent */
    plm_policy_free(policy);
}

/* Each mistake, and what its message must say. */
static void mistakes_are_named(void **state)
{
    (void)state;
#define UP(extra) "{\"upstreams\": [{\"name\": \"u\", \"kind\": \"openai\", \"model\": \"m\"" extra "}]"
    static const struct {
        const char *json;
        const char *message;
    } cases[] = {
        {"{\"upstreams\": [", "policy.json: not valid JSON"},
        {"[]", "(top level): expected an object, got an array"},
        {"{\"upstream\": []}", "(top level): unknown field \"upstream\""},
        {"{\"escalation\": \"sometimes\"}", "escalation: expected one of \"auto\", \"never\", got \"sometimes\""},
        {"{\"upstreams\": {}}", "upstreams: expected an array, got an object"},
        {"{\"upstreams\": [3]}", "upstreams[0]: expected an object, got 3"},
        {UP(", \"modle\": \"x\"") "}", "upstreams[0]: unknown field \"modle\""},
        {UP(", \"model\": \"again\"") "}", "upstreams[0]: field \"model\" given twice"},
        {UP(", \"api_key\": \"sk-live-abc\"") "}", "keys do not belong in the policy file"},
        {"{\"upstreams\": [{\"name\": \"u\", \"kind\": \"azure\", \"model\": \"m\"}]}",
         "upstreams[0].kind: expected one of \"openai\", \"anthropic\", \"gemini\", got \"azure\""},
        {"{\"upstreams\": [{\"name\": \"u\", \"kind\": \"openai\"}]}", "upstreams[0].model: missing"},
        {"{\"upstreams\": [{\"name\": \"\", \"kind\": \"openai\", \"model\": \"m\"}]}",
         "upstreams[0].name: expected a non-empty string, got \"\""},
        {"{\"upstreams\": [{\"name\": \"my server\", \"kind\": \"openai\", \"model\": \"m\"}]}",
         "upstreams[0].name: expected 1 to 64 letters"},
        {UP(", \"timeout_s\": \"10\"") "}", "upstreams[0].timeout_s: expected a number from 0.1 to 3600, got \"10\""},
        {UP(", \"timeout_s\": 0") "}", "upstreams[0].timeout_s: expected a number from 0.1 to 3600, got 0"},
        {UP(", \"max_retries\": 2.5") "}", "upstreams[0].max_retries: expected an integer from 0 to 10, got 2.5"},
        {UP(", \"max_retries\": -1") "}", "upstreams[0].max_retries: expected an integer from 0 to 10, got -1"},
        {UP(", \"max_tokens\": 0") "}", "upstreams[0].max_tokens: expected an integer from 1 to 1e+06, got 0"},
        {UP(", \"consent\": \"yes\"") "}",
         "upstreams[0].consent: expected one of \"never\", \"ask\", \"always\", got \"yes\""},
        {UP(", \"base_url\": \"ftp://x\"") "}", "upstreams[0].base_url: expected an http:// or https:// URL"},
        {UP(", \"base_url\": \"http://x/v1?key=1\"") "}", "upstreams[0].base_url: expected an http:// or https:// URL"},
        {"{\"upstreams\": [{\"name\": \"g\", \"kind\": \"gemini\", \"model\": \"../x\"}]}",
         "upstreams[0].model: expected a Gemini model name"},
        {"{\"upstreams\": [{\"name\": \"u\", \"kind\": \"openai\", \"model\": \"m\"},"
         " {\"name\": \"u\", \"kind\": \"gemini\", \"model\": \"m\"}]}",
         "upstreams[1]: name \"u\" is already the name of upstreams[0]"},
        {UP("") ", \"rules\": [{\"when\": \"always\", \"upstream\": \"v\"}]}",
         "rules[0].upstream: expected the name of an upstream (\"u\"), got \"v\""},
        {"{\"rules\": [{\"when\": \"always\", \"upstream\": \"v\"}]}", "\"upstreams\" is empty, got \"v\""},
        {UP("") ", \"rules\": [{\"when\": \"always\"}]}", "rules[0].upstream: missing"},
        {UP("") ", \"rules\": [{\"when\": \"sometimes\", \"upstream\": \"u\"}]}",
         "rules[0].when: expected one of \"context_overflow\", \"explicit\", \"uncertain\", \"always\""},
        {UP("") ", \"rules\": [{\"upstream\": \"u\"}]}", "rules[0].when: missing"},
        {UP("") ", \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"u\"}]}",
         "rules[0]: an \"uncertain\" rule needs \"min_token_prob_quantile\" or \"entropy_quantile\""},
        {UP("") ", \"rules\": [{\"when\": \"always\", \"upstream\": \"u\", \"first_tokens\": 8}]}",
         "rules[0].first_tokens: only a rule with \"when\": \"uncertain\" takes this field"},
        {UP("") ", \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"u\","
                " \"min_token_prob_quantile\": {\"q\": 1.5, \"below\": 0.2}}]}",
         "rules[0].min_token_prob_quantile.q: expected a number from 0 to 1, got 1.5"},
        {UP("") ", \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"u\","
                " \"min_token_prob_quantile\": {\"q\": 0.1, \"above\": 0.2}}]}",
         "rules[0].min_token_prob_quantile: unknown field \"above\""},
        {UP("") ", \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"u\", \"entropy_quantile\": {\"q\": 0.9}}]}",
         "rules[0].entropy_quantile: expected {\"q\": QUANTILE, \"above\": LIMIT}"},
        {UP("") ", \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"u\", \"first_tokens\": 0,"
                " \"entropy_quantile\": {\"q\": 0.9, \"above\": 1}}]}",
         "rules[0].first_tokens: expected an integer from 1 to 4096, got 0"},
        {"{\"redaction\": {\"types\": [\"email\", \"phone_number\"]}}",
         "redaction.types[1]: expected one of \"email\", \"phone\", \"card\""},
        {"{\"redaction\": {\"types\": [\"term\"]}}", "redaction.types[0]: expected one of"},
        {"{\"redaction\": {\"types\": \"email\"}}", "redaction.types: expected an array of detector names"},
        {"{\"redaction\": {\"enabled\": \"yes\"}}", "redaction.enabled: expected true or false, got \"yes\""},
        {"{\"redaction\": {\"terms\": [\"ok\", 5]}}", "redaction.terms[1]: expected a non-empty string, got 5"},
        {"{\"redaction\": {\"terms_file\": \"/nonexistent/terms.txt\"}}", "redaction.terms_file: "},
        {"{\"redaction\": {\"enabled\": true, \"secret\": 1}}", "redaction: unknown field \"secret\""},
    };
#undef UP
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plm_policy *policy = (plm_policy *)1;
        int rc = policy_parse(cases[i].json, strlen(cases[i].json), "policy.json", NULL, &policy);
        if (rc != PLM_ERR_FORMAT || policy != NULL)
            fail_msg("case %zu accepted (rc %d): %s", i, rc, cases[i].json);
        if (!strstr(plm_last_error(), cases[i].message))
            fail_msg("case %zu: '%s' lacks '%s'", i, plm_last_error(), cases[i].message);
        if (strncmp(plm_last_error(), "policy.json: ", 13) != 0)
            fail_msg("case %zu: '%s' does not name the file", i, plm_last_error());
    }
}

/* A key pasted where the variable's name goes must not be echoed. */
static void key_in_the_wrong_field_is_not_echoed(void **state)
{
    (void)state;
    const char *json = "{\"upstreams\": [{\"name\": \"u\", \"kind\": \"openai\", \"model\": \"m\","
                       " \"api_key_env\": \"sk-proj-AbCdEf0123456789\"}]}";
    plm_policy *policy;
    assert_int_equal(policy_parse(json, strlen(json), "p.json", NULL, &policy), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "upstreams[0].api_key_env: expected the NAME of an environment variable"));
    assert_null(strstr(plm_last_error(), "AbCdEf"));
    json = "{\"upstreams\": [{\"name\": \"u\", \"kind\": \"openai\", \"model\": \"m\", \"api_key\": \"sk-AbCdEf\"}]}";
    assert_int_equal(policy_parse(json, strlen(json), "p.json", NULL, &policy), PLM_ERR_FORMAT);
    assert_null(strstr(plm_last_error(), "AbCdEf"));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* terms_file: one term a line, '#' comments and blank lines skipped, CRLF
 * tolerated; a relative path is relative to the policy file. */
static void terms_file_beside_the_policy(void **state)
{
    (void)state;
    char dir[4096], policy_path[4200], terms_path[4200];
    snprintf(dir, sizeof dir, "%s", temp_path("policy_dir"));
    char command[4300];
    snprintf(command, sizeof command, "mkdir -p '%s'", dir);
    assert_int_equal(system(command), 0);
    snprintf(policy_path, sizeof policy_path, "%s/policy.json", dir);
    snprintf(terms_path, sizeof terms_path, "%s/names.txt", dir);
    write_file(terms_path, "# people\nAlice Example\r\n\n  Bob Builder  \n# places\n42 Example Street");
    write_file(policy_path, "{\"redaction\": {\"terms\": [\"Carol\"], \"terms_file\": \"names.txt\"}}");
    plm_policy *policy;
    int rc = plm_policy_load(policy_path, &policy);
    if (rc)
        fail_msg("%s", plm_last_error());
    assert_int_equal(policy->redaction.n_terms, 4);
    assert_string_equal(policy->redaction.terms[0], "Carol");
    assert_string_equal(policy->redaction.terms[1], "Alice Example");
    assert_string_equal(policy->redaction.terms[2], "Bob Builder");
    assert_string_equal(policy->redaction.terms[3], "42 Example Street");
    plm_policy_free(policy);

    write_file(policy_path, "{\"redaction\": {\"terms_file\": \"missing.txt\"}}");
    assert_int_equal(plm_policy_load(policy_path, &policy), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "redaction.terms_file"));
    assert_non_null(strstr(plm_last_error(), "missing.txt"));
    assert_null(policy);

    assert_int_equal(plm_policy_load("/nonexistent/policy.json", &policy), PLM_ERR_IO);
    assert_non_null(strstr(plm_last_error(), "/nonexistent/policy.json"));
}

/* Every truncation and random corruption of the example: a policy or an
 * error, never a crash (run under ASan to mean something). */
static void hostile_files(void **state)
{
    (void)state;
    size_t len = strlen(example);
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        plm_policy *policy;
        if (policy_parse(example, cut, "p.json", NULL, &policy) == PLM_OK) {
            accepted++;
            plm_policy_free(policy);
        }
    }
    assert_int_equal(accepted, 1); /* only the cut of the final newline keeps the closing brace */
    struct test_rng rng = {99};
    char *copy = malloc(len + 1);
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, example, len + 1);
        for (int flips = 0; flips < 2; flips++)
            copy[rng_next(&rng) % len] ^= (char)(1u << (rng_next(&rng) % 7));
        plm_policy *policy;
        if (policy_parse(copy, len, "p.json", NULL, &policy) == PLM_OK)
            plm_policy_free(policy);
        else
            assert_true(strlen(plm_last_error()) > 0);
    }
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_loads),
        cmocka_unit_test(minimal_policies),
        cmocka_unit_test(mistakes_are_named),
        cmocka_unit_test(key_in_the_wrong_field_is_not_echoed),
        cmocka_unit_test(terms_file_beside_the_policy),
        cmocka_unit_test(hostile_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
