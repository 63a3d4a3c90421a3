// The Vercel AI SDK with its default OpenAI provider pointed at Plugsky: provider(model) speaks
// /v1/responses, provider.chat(model) /v1/chat/completions; generateText and streamText on each.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, tool } from "ai";
import { z } from "zod";
import { run } from "./config.mjs";

const PROMPT = "What is 2+2?";

function models({ baseURL, apiKey, model }) {
  const provider = createOpenAI({ baseURL, apiKey });
  return { responses: provider(model), chat: provider.chat(model) };
}

function described(result, response) {
  return {
    id: response.id,
    requestId: response.headers?.["x-request-id"] ?? null,
    text: result.text,
    finishReason: result.finishReason,
    usage: result.usage,
  };
}

async function generated(model) {
  const result = await generateText({ model, prompt: PROMPT, maxOutputTokens: 32, temperature: 0, maxRetries: 0 });
  return described(result, result.response);
}

async function streamed(model) {
  const result = streamText({ model, prompt: PROMPT, maxOutputTokens: 32, temperature: 0, maxRetries: 0 });
  let parts = 0;
  for await (const part of result.textStream) parts += part.length > 0 ? 1 : 0;
  const usage = await result.usage;
  const response = await result.response;
  return { ...described({ text: await result.text, finishReason: await result.finishReason, usage }, response), parts };
}

// A tool without `execute`: the SDK returns the model's call instead of running it.
const WEATHER = tool({
  description: "Get the current weather in a city",
  inputSchema: z.object({ city: z.string() }),
});

async function called(model) {
  const result = await generateText({
    model, prompt: "What's the weather in Paris?", tools: { get_weather: WEATHER },
    toolChoice: "required", maxOutputTokens: 60, temperature: 0, maxRetries: 0,
  });
  const calls = result.toolCalls.map(({ toolName, input }) => ({ toolName, input }));
  return { ...described(result, result.response), calls };
}

await run({
  "responses-generate": (settings) => generated(models(settings).responses),
  "responses-stream": (settings) => streamed(models(settings).responses),
  "chat-generate": (settings) => generated(models(settings).chat),
  "chat-stream": (settings) => streamed(models(settings).chat),
  "responses-tool": (settings) => called(models(settings).responses),
  "chat-tool": (settings) => called(models(settings).chat),
});
