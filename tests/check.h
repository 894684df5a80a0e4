/*
 * check.h (tests): the unit-test framework Check and saev's common/check.h share a file
 * name. Test targets search tests/ first and land here, which pulls in both, so a test
 * can write #include <check.h> and any saev header can keep including "check.h".
 */
#include "../common/check.h"
#include CHECK_FRAMEWORK_HEADER
